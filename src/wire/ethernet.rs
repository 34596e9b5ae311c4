//! Ethernet II / IPv4 / UDP header views and builders for AF_XDP frames.
