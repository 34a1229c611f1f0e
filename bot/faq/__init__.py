"""The knowledge base: loading `knowledge/`, checking it, and answering from it."""
