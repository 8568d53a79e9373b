//! Reference servers (endpoint, master, NAT, cluster): filled by issue 4.
