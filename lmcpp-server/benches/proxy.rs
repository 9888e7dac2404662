//! The multi-model proxy's benchmarks (see `unix/proxy.rs`): the proxy, the byte relay
//! and llama-server all meet over Unix sockets, so the bench runs where they exist.

#[cfg(unix)]
#[path = "unix/proxy.rs"]
mod bench;

fn main() {
    #[cfg(unix)]
    bench::main();
    #[cfg(not(unix))]
    #[allow(clippy::print_stdout)]
    {
        println!("the proxy benchmarks need Unix sockets; run them on Linux or macOS");
    }
}
