//! Ferry: a background transfer manager with the job model of Windows BITS.
//!
//! Layers, from the inside out: [`job`] (pure model), [`store`] (persistence), [`engine`]
//! (the actor that owns the jobs and runs transfers), [`service`] (the engine behind a local API, and
//! its client), and the surfaces (the `ferry` binary).

pub mod cli;
pub mod config;
pub(crate) mod content_range;
pub mod engine;
pub mod gui;
pub mod job;
pub mod platform;
pub mod serve;
pub mod service;
pub mod store;
