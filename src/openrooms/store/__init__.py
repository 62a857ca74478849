"""Persistence behind one small interface (`RoomStore`), chosen once at start-up."""
