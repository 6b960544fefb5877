//! wasmtime-wasi's TCP sockets view with the guard in front: a socket is
//! a descriptor, charged to the budget when it is created and given back
//! when it is dropped; every other call is passed through.

use wasmtime::component::Resource;
use wasmtime_wasi::p2::bindings::sockets::network;
use wasmtime_wasi::p2::bindings::sockets::network::{
    ErrorCode as NetErrorCode, IpAddressFamily, IpSocketAddress, Network,
};
use wasmtime_wasi::p2::bindings::sockets::tcp::{self, HostTcpSocket, ShutdownType};
use wasmtime_wasi::p2::bindings::sockets::tcp_create_socket;
use wasmtime_wasi::p2::{DynInputStream, DynOutputStream, DynPollable, SocketResult, TcpSocket};
use wasmtime_wasi::sockets::WasiSocketsCtxView;

use super::P2Guard;

/// wasmtime-wasi's sockets view with the guard in front.
pub struct GuardedSockets<'a> {
    pub sockets: WasiSocketsCtxView<'a>,
    pub guard: &'a mut P2Guard,
}

impl tcp_create_socket::Host for GuardedSockets<'_> {
    fn create_tcp_socket(
        &mut self,
        address_family: IpAddressFamily,
    ) -> SocketResult<Resource<TcpSocket>> {
        if self.guard.guard.open().is_err() {
            return Err(NetErrorCode::NewSocketLimit.into());
        }
        match self.sockets.create_tcp_socket(address_family) {
            Ok(socket) => {
                self.guard.sockets.insert(socket.rep(), ());
                Ok(socket)
            }
            Err(e) => {
                self.guard.guard.close();
                Err(e)
            }
        }
    }
}

impl tcp::Host for GuardedSockets<'_> {}

impl network::Host for GuardedSockets<'_> {
    fn convert_error_code(
        &mut self,
        error: wasmtime_wasi::p2::SocketError,
    ) -> wasmtime::Result<NetErrorCode> {
        network::Host::convert_error_code(&mut self.sockets, error)
    }

    fn network_error_code(
        &mut self,
        err: Resource<wasmtime::Error>,
    ) -> wasmtime::Result<Option<NetErrorCode>> {
        network::Host::network_error_code(&mut self.sockets, err)
    }
}

impl network::HostNetwork for GuardedSockets<'_> {
    fn drop(&mut self, this: Resource<Network>) -> wasmtime::Result<()> {
        network::HostNetwork::drop(&mut self.sockets, this)
    }
}

impl HostTcpSocket for GuardedSockets<'_> {
    fn drop(&mut self, this: Resource<TcpSocket>) -> wasmtime::Result<()> {
        let rep = this.rep();
        HostTcpSocket::drop(&mut self.sockets, this)?;
        if self.guard.sockets.remove(&rep).is_some() {
            self.guard.guard.close();
        }
        Ok(())
    }

    async fn start_bind(
        &mut self,
        this: Resource<TcpSocket>,
        network: Resource<Network>,
        local_address: IpSocketAddress,
    ) -> SocketResult<()> {
        self.sockets.start_bind(this, network, local_address).await
    }
    fn finish_bind(&mut self, this: Resource<TcpSocket>) -> SocketResult<()> {
        self.sockets.finish_bind(this)
    }
    fn start_connect(
        &mut self,
        this: Resource<TcpSocket>,
        network: Resource<Network>,
        remote_address: IpSocketAddress,
    ) -> SocketResult<()> {
        self.sockets.start_connect(this, network, remote_address)
    }
    fn finish_connect(
        &mut self,
        this: Resource<TcpSocket>,
    ) -> SocketResult<(Resource<DynInputStream>, Resource<DynOutputStream>)> {
        self.sockets.finish_connect(this)
    }
    async fn start_listen(&mut self, this: Resource<TcpSocket>) -> SocketResult<()> {
        self.sockets.start_listen(this).await
    }
    fn finish_listen(&mut self, this: Resource<TcpSocket>) -> SocketResult<()> {
        self.sockets.finish_listen(this)
    }
    fn accept(
        &mut self,
        this: Resource<TcpSocket>,
    ) -> SocketResult<(
        Resource<TcpSocket>,
        Resource<DynInputStream>,
        Resource<DynOutputStream>,
    )> {
        self.sockets.accept(this)
    }
    fn local_address(&mut self, this: Resource<TcpSocket>) -> SocketResult<IpSocketAddress> {
        self.sockets.local_address(this)
    }
    fn remote_address(&mut self, this: Resource<TcpSocket>) -> SocketResult<IpSocketAddress> {
        self.sockets.remote_address(this)
    }
    fn is_listening(&mut self, this: Resource<TcpSocket>) -> Result<bool, wasmtime::Error> {
        self.sockets.is_listening(this)
    }
    fn address_family(
        &mut self,
        this: Resource<TcpSocket>,
    ) -> Result<IpAddressFamily, wasmtime::Error> {
        self.sockets.address_family(this)
    }
    fn set_listen_backlog_size(
        &mut self,
        this: Resource<TcpSocket>,
        value: u64,
    ) -> SocketResult<()> {
        self.sockets.set_listen_backlog_size(this, value)
    }
    fn keep_alive_enabled(&mut self, this: Resource<TcpSocket>) -> SocketResult<bool> {
        self.sockets.keep_alive_enabled(this)
    }
    fn set_keep_alive_enabled(
        &mut self,
        this: Resource<TcpSocket>,
        value: bool,
    ) -> SocketResult<()> {
        self.sockets.set_keep_alive_enabled(this, value)
    }
    fn keep_alive_idle_time(&mut self, this: Resource<TcpSocket>) -> SocketResult<u64> {
        self.sockets.keep_alive_idle_time(this)
    }
    fn set_keep_alive_idle_time(
        &mut self,
        this: Resource<TcpSocket>,
        value: u64,
    ) -> SocketResult<()> {
        self.sockets.set_keep_alive_idle_time(this, value)
    }
    fn keep_alive_interval(&mut self, this: Resource<TcpSocket>) -> SocketResult<u64> {
        self.sockets.keep_alive_interval(this)
    }
    fn set_keep_alive_interval(
        &mut self,
        this: Resource<TcpSocket>,
        value: u64,
    ) -> SocketResult<()> {
        self.sockets.set_keep_alive_interval(this, value)
    }
    fn keep_alive_count(&mut self, this: Resource<TcpSocket>) -> SocketResult<u32> {
        self.sockets.keep_alive_count(this)
    }
    fn set_keep_alive_count(&mut self, this: Resource<TcpSocket>, value: u32) -> SocketResult<()> {
        self.sockets.set_keep_alive_count(this, value)
    }
    fn hop_limit(&mut self, this: Resource<TcpSocket>) -> SocketResult<u8> {
        self.sockets.hop_limit(this)
    }
    fn set_hop_limit(&mut self, this: Resource<TcpSocket>, value: u8) -> SocketResult<()> {
        self.sockets.set_hop_limit(this, value)
    }
    fn receive_buffer_size(&mut self, this: Resource<TcpSocket>) -> SocketResult<u64> {
        self.sockets.receive_buffer_size(this)
    }
    fn set_receive_buffer_size(
        &mut self,
        this: Resource<TcpSocket>,
        value: u64,
    ) -> SocketResult<()> {
        self.sockets.set_receive_buffer_size(this, value)
    }
    fn send_buffer_size(&mut self, this: Resource<TcpSocket>) -> SocketResult<u64> {
        self.sockets.send_buffer_size(this)
    }
    fn set_send_buffer_size(&mut self, this: Resource<TcpSocket>, value: u64) -> SocketResult<()> {
        self.sockets.set_send_buffer_size(this, value)
    }
    fn subscribe(&mut self, this: Resource<TcpSocket>) -> wasmtime::Result<Resource<DynPollable>> {
        self.sockets.subscribe(this)
    }
    fn shutdown(
        &mut self,
        this: Resource<TcpSocket>,
        shutdown_type: ShutdownType,
    ) -> SocketResult<()> {
        self.sockets.shutdown(this, shutdown_type)
    }
}
