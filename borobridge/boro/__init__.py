"""The Boro Control API: client, wire models, request signing and a simulator of the server."""
