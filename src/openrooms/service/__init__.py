"""The service layer: every rule of rooms, participants and identities. No HTTP, no JSON, no SQL."""
