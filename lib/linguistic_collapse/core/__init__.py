"""The ground floor: user errors, repository paths and atomic writes, content hashes, run names
and the profile's schema."""
