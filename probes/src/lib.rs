//! Initiator side and judges (LAC swarm, probes, sequence checker): filled by issues 5 and 6.
