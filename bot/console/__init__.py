"""The agents' web console: HTTP views, pages and live updates over the handoff service.

It sits with the channels at the top of the layers (it is HTTP and HTML); what it decides
lives below it, in `bot.escalation` (the handoff service, agents' sessions and logins).
"""
