//! Sync between checkpoints and the hub: the messages ([`protocol`]) and
//! the checkpoint's side ([`agent`]); the hub's side is [`crate::hub`].

pub mod agent;
pub mod ask;
pub mod equivocation;
pub mod post;
pub mod protocol;
pub mod verify;
