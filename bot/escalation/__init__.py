"""Human handoff: the queue, assignment, tickets, ratings, and the agent console."""
