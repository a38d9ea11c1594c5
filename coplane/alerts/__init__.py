"""Alert delivery: incidents routed to channels through the outbox and its dispatcher."""
