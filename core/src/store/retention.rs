//! Retention: which CommitLog segments expire and when disk usage forces cleaning.
