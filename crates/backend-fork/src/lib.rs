//! wip
mod fork;
mod process;
