"""The project's own reliability suite (issue #12): the server under faults it must survive, each run followed by
a Bundle-by-Bundle read-back. Test tooling, not part of the server package: ``make reliability`` runs it in full,
``make reliability-short`` (CI) a short version. See README, "Reliability suite"."""
