//! Helpers shared by the media crate's integration tests.

pub(crate) use chaincall_media::signal::correlation;
