"""Unit tests: pure functions and in-memory pipelines; no network beyond httpx.MockTransport, no brokers."""
