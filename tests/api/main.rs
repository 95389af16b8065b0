//! Behaviour of the API and admin listeners, in-process (poem's TestClient) and on real sockets
//! bound to 127.0.0.1:0.

mod admin;
mod echo;
mod errors;
mod helpers;
mod info;
mod logging;
mod openapi;
mod protection;
mod readme;
mod testing;
