"""Scriptorium: the server of a learning platform with live co-editing and live forums."""
