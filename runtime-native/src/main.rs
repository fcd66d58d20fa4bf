fn main() {
    println!("vostok: not yet");
}
