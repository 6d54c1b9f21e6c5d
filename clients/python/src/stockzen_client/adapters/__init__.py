"""What the client talks to: its SQLite store and the StockZen gateway."""
