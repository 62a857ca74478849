"""`openrooms migrate`: take over an ACS resource's rooms and users.

source.py reads the resource through its public Rooms API; target.py is the openrooms store written to;
plan.py decides, room by room, what a copy changes; copy.py applies it; verify.py compares the two sides.
"""
