"""The event log: every change to rooms, rosters, users and keys, written in the transaction of the change."""
