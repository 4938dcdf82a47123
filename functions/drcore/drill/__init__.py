"""drill: DR drills that restore the newest backups into scratch resources, and their reports. Imports
everything below it except wiring."""
