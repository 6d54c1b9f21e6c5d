"""Runtime helpers shared by the StockZen services (never run on their own)."""
