fn main() {
    println!("apogee {}", env!("CARGO_PKG_VERSION"));
}
