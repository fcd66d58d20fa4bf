//! A pure, single-threaded, seeded world of NameServers, brokers and clients over virtual time.
