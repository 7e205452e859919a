"""Linking keeps no tables of its own: leads, accounts, contacts and the review queue are in workspaces."""
