"""B特派 support bot: answers, diagnoses, acts for merchants and hands off to people."""

__version__ = "0.1.0"
