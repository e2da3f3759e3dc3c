//! The `zaqar` binary.

fn main() {}
