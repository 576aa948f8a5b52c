"""Tools that run on the user's side of the API (the berth CLI calls them): they make images and
files for an engine, and are not part of it."""
