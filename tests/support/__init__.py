"""Helpers shared by test folders: real processes (etcd) on loopback."""
