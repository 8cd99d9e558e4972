"""Component tests: the simulator over real HTTP on 127.0.0.1, or a real ``borobridge`` process, without brokers."""
