# interim: build in a Rust image, run in a slim Debian with only what the
# binary links (glibc, libgcc_s) plus CA certificates for SMTP/HTTPS TLS.
# Build:  docker build -t interim .
# Run:    docker run -v ./config:/etc/interim:ro -v interim-data:/var/lib/interim \
#           -e INTERIM_SMTP_PASSWORD=… interim
# The admin endpoint listens on 127.0.0.1:9464 inside the container (the
# HEALTHCHECK reaches it, nothing else does). To scrape it from outside:
#   -e INTERIM__HTTP__LISTEN=0.0.0.0:9464 -p 127.0.0.1:9464:9464
# and set http.admin_token_env for write actions (README, "Operating it").

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# The whole context but what .dockerignore leaves out (target/, .git/): the
# build reads the workspace's crates, their migrations and offline query
# data (.sqlx/, with SQLX_OFFLINE set in .cargo/config.toml), build.rs and
# the bench targets Cargo.toml declares; a list of paths here fell behind.
COPY . .
RUN cargo build --release --locked \
    && strip target/release/interim

FROM debian:bookworm-slim
# ca-certificates follows Debian's security updates; pinning it would pin
# stale roots.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/interim --create-home --shell /usr/sbin/nologin interim
COPY --from=build /src/target/release/interim /usr/local/bin/interim
COPY config/ /etc/interim/
WORKDIR /var/lib/interim
USER 10001:10001
# Config (read-only) and the SQLite ledger (state) live on volumes.
VOLUME ["/etc/interim", "/var/lib/interim"]
ENV INTERIM_CONFIG=/etc/interim/interim.toml \
    INTERIM__STORE__URL=sqlite:///var/lib/interim/interim.db \
    INTERIM__TEMPLATES__DIR=/etc/interim/templates \
    INTERIM_LOG=info
# Reachable from outside the container only with INTERIM__HTTP__LISTEN=0.0.0.0:9464.
EXPOSE 9464
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 CMD ["interim", "healthcheck"]
ENTRYPOINT ["interim"]
CMD ["run"]
