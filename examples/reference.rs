//! The HTTP yardstick of `bench/reads.sh`: the smallest actix-web server, answering every
//! GET with a constant JSON body the size of a `get_results` answer, built from the same
//! lock file and profile as icewall (`cargo build --profile profiling --example reference`).
//! What icewall's reads cost beyond it is the work a constant body does not have.
//!
//! Usage: `reference [ADDRESS]` (default 127.0.0.1:0); prints `listening on http://...`.

use actix_web::{App, HttpResponse, HttpServer, web};

/// The `get_results` answer of the example wall with 3 teams (281 bytes).
const BODY: &str = r#"{"status":"done","data":{"days":31,"num_teams":3,"ice":16965,"cost":32233500,"profiles":[{"profile":1,"sections":3,"days":9,"ice":3120,"cost":5928000},{"profile":2,"sections":1,"days":15,"ice":2535,"cost":4816500},{"profile":3,"sections":5,"days":31,"ice":11310,"cost":21489000}]}}"#;

async fn answer() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(BODY)
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let address = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_owned());
    // As many HTTP workers as icewall's default (`--http-workers`, one per core).
    let workers = std::thread::available_parallelism().map_or(2, usize::from);
    let server = HttpServer::new(|| App::new().default_service(web::get().to(answer)))
        .workers(workers)
        .bind(address)?;
    for bound in server.addrs() {
        println!("listening on http://{bound}");
    }
    server.run().await
}
