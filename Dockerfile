# The image config/ deploys: `siskin` (operator, CLI) and `siskin-router` in one image.
#   docker build -t ghcr.io/siskin-dev/siskin:dev .
# Not built by CI here (no container runtime on the build machine).
FROM rust:1.89-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin siskin --bin siskin-router

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/siskin /src/target/release/siskin-router /usr/local/bin/
USER 65532:65532
ENTRYPOINT ["siskin"]
CMD ["operator"]
