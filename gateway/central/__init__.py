"""Central consumer: a whole fleet from a clustered broker into one database (docs/fleet.md)."""
