//! `vostok-sim`: the deterministic simulator. Not built yet: this binary only reports so.

fn main() {
    eprintln!("vostok-sim: the deterministic simulator is not implemented yet");
    std::process::exit(2);
}
