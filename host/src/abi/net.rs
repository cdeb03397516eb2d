//! `weft:net`: TCP and UDP sockets on the instance's interface records.
//!
//! Every function returns an errno (see `weft_abi::net` for each contract).
//! It traps when a pointer range is outside the guest's memory or a handle
//! is unknown. An instance without any interface record gets `NO_NETWORK`,
//! not a trap. Waiting calls suspend only this instance; a stopped
//! instance's wait ends with
//! [`Interrupt::Killed`](crate::runtime::failure::Interrupt).

use crate::network::{GuestNet, NetError, Wait};
use crate::runtime::State;
use crate::runtime::failure::Interrupt;
use std::net::{Ipv4Addr, SocketAddrV4};
use wasmtime::{Caller, Linker};
use weft_abi::errno;
use weft_abi::net::*;

type Ret = wasmtime::Result<i32>;

/// Adds `weft:net` to the linker.
pub fn register(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    linker.func_wrap_async(
        MODULE,
        TCP_LISTEN,
        |caller, (ip, port, out): (i32, i32, i32)| Box::new(bind(caller, ip, port, out, true)),
    )?;
    linker.func_wrap_async(
        MODULE,
        TCP_ACCEPT,
        |caller, (listener, timeout, out, addr): (i32, i64, i32, i32)| {
            Box::new(tcp_accept(caller, listener, timeout, out, addr))
        },
    )?;
    linker.func_wrap_async(
        MODULE,
        TCP_CONNECT,
        |caller, (ip, port, timeout, out): (i32, i32, i64, i32)| {
            Box::new(tcp_connect(caller, ip, port, timeout, out))
        },
    )?;
    linker.func_wrap_async(
        MODULE,
        SEND,
        |caller, (handle, ptr, len, timeout, out): (i32, i32, i32, i64, i32)| {
            Box::new(send(caller, handle, ptr, len, timeout, out))
        },
    )?;
    linker.func_wrap_async(
        MODULE,
        RECV,
        |caller, (handle, ptr, len, timeout, out): (i32, i32, i32, i64, i32)| {
            Box::new(recv(caller, handle, ptr, len, timeout, out))
        },
    )?;
    linker.func_wrap_async(MODULE, SHUTDOWN, |caller, (handle,): (i32,)| {
        Box::new(async move {
            let net = guest_net(&caller);
            answer(match net {
                Some(net) => net.shutdown(handle).await,
                None => Err(NetError::Code(errno::NO_NETWORK)),
            })
        })
    })?;
    linker.func_wrap_async(
        MODULE,
        UDP_BIND,
        |caller, (ip, port, out): (i32, i32, i32)| Box::new(bind(caller, ip, port, out, false)),
    )?;
    linker.func_wrap_async(
        MODULE,
        UDP_SEND_TO,
        |caller, (handle, ip, port, ptr, len, timeout): (i32, i32, i32, i32, i32, i64)| {
            Box::new(udp_send_to(caller, handle, ip, port, ptr, len, timeout))
        },
    )?;
    linker.func_wrap_async(
        MODULE,
        UDP_RECV_FROM,
        |caller, (handle, ptr, len, timeout, out, addr): (i32, i32, i32, i64, i32, i32)| {
            Box::new(udp_recv_from(caller, handle, ptr, len, timeout, out, addr))
        },
    )?;
    linker.func_wrap_async(MODULE, LOCAL_ADDR, |caller, (handle, out): (i32, i32)| {
        Box::new(address(caller, handle, out, true))
    })?;
    linker.func_wrap_async(MODULE, PEER_ADDR, |caller, (handle, out): (i32, i32)| {
        Box::new(address(caller, handle, out, false))
    })?;
    linker.func_wrap_async(MODULE, CLOSE, |caller, (handle,): (i32,)| {
        Box::new(async move {
            let net = guest_net(&caller);
            answer(match net {
                Some(net) => net.close(handle).await,
                None => Err(NetError::BadHandle),
            })
        })
    })?;
    linker.func_wrap(
        MODULE,
        INTERFACES,
        |mut caller: Caller<'_, State>, out: i32, max: i32, count: i32| -> Ret {
            let ips = guest_net(&caller)
                .map(|n| n.interfaces())
                .unwrap_or_default();
            let shown: Vec<u8> = ips
                .iter()
                .take(max.max(0) as usize)
                .flat_map(|ip| u32::from(*ip).to_le_bytes())
                .collect();
            super::write_guest_bytes(&mut caller, out as u32, &shown)?;
            super::write_guest_bytes(&mut caller, count as u32, &(ips.len() as u32).to_le_bytes())?;
            Ok(errno::OK)
        },
    )?;
    linker.func_wrap_async(MODULE, SEND_RAW, |caller, (ptr, len): (i32, i32)| {
        Box::new(send_raw(caller, ptr, len))
    })?;
    Ok(())
}

async fn send_raw(mut caller: Caller<'_, State>, ptr: i32, len: i32) -> Ret {
    if len as u32 as usize > MAX_RAW {
        return answer::<()>(Err(NetError::Code(errno::INVALID_ARGUMENT)));
    }
    let data = super::read_guest_bytes(&mut caller, ptr as u32, len as u32, MAX_RAW)?;
    answer(match guest_net(&caller) {
        Some(net) => net.send_raw(&data).await,
        None => Err(NetError::Code(errno::NO_NETWORK)),
    })
}

fn guest_net(caller: &Caller<'_, State>) -> Option<GuestNet> {
    caller.data().net.clone()
}

fn socket_addr(ip: i32, port: i32) -> Result<SocketAddrV4, NetError> {
    let port = u16::try_from(port).map_err(|_| NetError::Code(errno::INVALID_ARGUMENT))?;
    Ok(SocketAddrV4::new(Ipv4Addr::from(ip as u32), port))
}

fn encode_addr(addr: SocketAddrV4) -> [u8; 8] {
    let mut out = [0; 8];
    out[..4].copy_from_slice(&u32::from(*addr.ip()).to_le_bytes());
    out[4..].copy_from_slice(&u32::from(addr.port()).to_le_bytes());
    out
}

/// Turns a result into the guest's errno, or a trap.
fn answer<T>(result: Result<T, NetError>) -> Ret {
    match result {
        Ok(_) => Ok(errno::OK),
        Err(NetError::Code(code)) => Ok(code),
        Err(NetError::BadHandle) => Err(wasmtime::format_err!("weft:net: unknown socket handle")),
        Err(NetError::Cancelled) => Err(Interrupt::Killed.into()),
    }
}

/// `tcp_listen` (`tcp: true`) and `udp_bind`: a socket on a local address.
async fn bind(mut caller: Caller<'_, State>, ip: i32, port: i32, out: i32, tcp: bool) -> Ret {
    let Some(net) = guest_net(&caller) else {
        return Ok(errno::NO_NETWORK);
    };
    let result = match socket_addr(ip, port) {
        Ok(local) if tcp => net.tcp_listen(local).await,
        Ok(local) => net.udp_bind(local).await,
        Err(error) => Err(error),
    };
    if let Ok(handle) = &result {
        super::write_guest_bytes(&mut caller, out as u32, &handle.to_le_bytes())?;
    }
    answer(result)
}

async fn tcp_accept(
    mut caller: Caller<'_, State>,
    listener: i32,
    timeout: i64,
    out: i32,
    addr: i32,
) -> Ret {
    let Some(net) = guest_net(&caller) else {
        return answer::<()>(Err(NetError::BadHandle));
    };
    let result = net.tcp_accept(listener, Wait::from_ms(timeout)).await;
    if let Ok((handle, peer)) = &result {
        super::write_guest_bytes(&mut caller, out as u32, &handle.to_le_bytes())?;
        super::write_guest_bytes(&mut caller, addr as u32, &encode_addr(*peer))?;
    }
    answer(result)
}

async fn tcp_connect(
    mut caller: Caller<'_, State>,
    ip: i32,
    port: i32,
    timeout: i64,
    out: i32,
) -> Ret {
    let Some(net) = guest_net(&caller) else {
        return Ok(errno::NO_NETWORK);
    };
    let result = match socket_addr(ip, port) {
        Ok(remote) => net.tcp_connect(remote, Wait::from_ms(timeout)).await,
        Err(error) => Err(error),
    };
    if let Ok(handle) = &result {
        super::write_guest_bytes(&mut caller, out as u32, &handle.to_le_bytes())?;
    }
    answer(result)
}

async fn send(
    mut caller: Caller<'_, State>,
    handle: i32,
    ptr: i32,
    len: i32,
    timeout: i64,
    out: i32,
) -> Ret {
    let data = super::read_guest_bytes(&mut caller, ptr as u32, len as u32, 1 << 20)?;
    let Some(net) = guest_net(&caller) else {
        return answer::<()>(Err(NetError::BadHandle));
    };
    let result = net.send(handle, &data, Wait::from_ms(timeout)).await;
    if let Ok(n) = &result {
        super::write_guest_bytes(&mut caller, out as u32, &(*n as u32).to_le_bytes())?;
    }
    answer(result)
}

async fn recv(
    mut caller: Caller<'_, State>,
    handle: i32,
    ptr: i32,
    len: i32,
    timeout: i64,
    out: i32,
) -> Ret {
    // Check the range first: a bad pointer traps before any data is taken.
    super::check_guest_range(&mut caller, ptr as u32, len as u32)?;
    let Some(net) = guest_net(&caller) else {
        return answer::<()>(Err(NetError::BadHandle));
    };
    let result = net
        .recv(handle, len.max(0) as usize, Wait::from_ms(timeout))
        .await;
    if let Ok(data) = &result {
        super::write_guest_bytes(&mut caller, ptr as u32, data)?;
        super::write_guest_bytes(&mut caller, out as u32, &(data.len() as u32).to_le_bytes())?;
    }
    answer(result)
}

async fn udp_send_to(
    mut caller: Caller<'_, State>,
    handle: i32,
    ip: i32,
    port: i32,
    ptr: i32,
    len: i32,
    timeout: i64,
) -> Ret {
    let data = super::read_guest_bytes(&mut caller, ptr as u32, len as u32, 1 << 17)?;
    let Some(net) = guest_net(&caller) else {
        return answer::<()>(Err(NetError::BadHandle));
    };
    let result = match socket_addr(ip, port) {
        Ok(to) => {
            net.udp_send_to(handle, &data, to, Wait::from_ms(timeout))
                .await
        }
        Err(error) => Err(error),
    };
    answer(result)
}

async fn udp_recv_from(
    mut caller: Caller<'_, State>,
    handle: i32,
    ptr: i32,
    len: i32,
    timeout: i64,
    out: i32,
    addr: i32,
) -> Ret {
    super::check_guest_range(&mut caller, ptr as u32, len as u32)?;
    let Some(net) = guest_net(&caller) else {
        return answer::<()>(Err(NetError::BadHandle));
    };
    let result = net
        .udp_recv_from(handle, len.max(0) as usize, Wait::from_ms(timeout))
        .await;
    if let Ok((data, from)) = &result {
        super::write_guest_bytes(&mut caller, ptr as u32, data)?;
        super::write_guest_bytes(&mut caller, out as u32, &(data.len() as u32).to_le_bytes())?;
        super::write_guest_bytes(&mut caller, addr as u32, &encode_addr(*from))?;
    }
    answer(result)
}

async fn address(mut caller: Caller<'_, State>, handle: i32, out: i32, local: bool) -> Ret {
    let Some(net) = guest_net(&caller) else {
        return answer::<()>(Err(NetError::BadHandle));
    };
    let result = if local {
        net.local_addr(handle).await
    } else {
        net.peer_addr(handle).await
    };
    if let Ok(addr) = &result {
        super::write_guest_bytes(&mut caller, out as u32, &encode_addr(*addr))?;
    }
    answer(result)
}
