//! `FileMutex`: see the crate docs. (Being written.)
