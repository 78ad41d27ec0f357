//! WebRTC in the browser: the pure negotiation state machine, the peer connection that
//! performs it, and local media (microphone, camera, screen).

pub mod media;
pub mod negotiation;
pub mod peer;
