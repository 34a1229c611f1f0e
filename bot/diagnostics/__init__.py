"""Multi-turn flows over live platform data; one module per flow, a .mmd diagram beside each."""
