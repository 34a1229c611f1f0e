"""Channel adapters: each translates its own wire format to IncomingMessage and Reply back."""
