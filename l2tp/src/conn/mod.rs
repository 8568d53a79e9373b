//! Sans-IO control connection engines: inputs take `now`, outputs are polled
//! (`poll_transmit`, `poll_timeout`, ...); nothing here owns a socket or a clock.

pub mod reliable;
pub mod tunnel;
pub mod tunnels;
