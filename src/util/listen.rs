//! Listening sockets with room for a burst: std's `bind` asks the kernel for a queue of
//! 128 pending connections, and a burst beyond it (300 clients at once, say) can leave
//! connections reset before the daemon ever accepts them. These queue up to `BACKLOG`
//! (the kernel caps it at `net.core.somaxconn`); the connection cap then answers them.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};

/// Pending connections the kernel may hold for us.
pub const BACKLOG: u32 = 1024;

/// Binds `addr` (with `SO_REUSEADDR`, as std does) and listens with [`BACKLOG`].
pub fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}
