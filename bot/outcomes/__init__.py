"""Verified resolution: what the bot did is checked after the fact, not assumed.

`expected` says, from what a turn established, what is to be checked (the turn writes it);
`checker` settles the checks against the platform, as the server's scheduled job.
"""
