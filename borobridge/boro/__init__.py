"""The Boro Control API, client side: the client, its queries, wire models, request signing and HTTP set-up."""
