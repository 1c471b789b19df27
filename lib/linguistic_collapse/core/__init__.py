"""The ground floor: user errors, repository paths and atomic writes, content hashes."""
