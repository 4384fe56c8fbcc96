# syntax=docker/dockerfile:1
# Node: the current LTS line. Debian trixie: its ipxe package provides the boot loaders (found in /usr/lib/ipxe
# and /boot at start, no copy needed).
ARG NODE_VERSION=24

# Build stage: dependencies and native modules (better-sqlite3, Plinth's socket addon) compiled here, for this
# image's Node and libc; the host's node_modules and native/build never enter (.dockerignore).
FROM node:${NODE_VERSION}-trixie AS build
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
COPY native ./native
# npm ci runs `prepare` (scripts/build.mjs --if-possible: skipped until src/ is there), so the script comes first.
COPY scripts ./scripts
# npm ci's postinstall builds the socket helper (native/) against the image's Node headers.
RUN npm ci && test -f native/build/Release/plinth_net.node
COPY . .
# Compiled JavaScript when the project has a build script; then only runtime dependencies remain.
RUN npm run typecheck && npm run build --if-present && npm prune --omit=dev \
    && rm -rf test bench .ci native/build/Release/obj.target

# Runtime stage: no compilers, unprivileged user, only the capabilities the protocols need.
FROM node:${NODE_VERSION}-trixie-slim
RUN apt-get update && apt-get install -y --no-install-recommends libcap2-bin ipxe \
    && setcap 'cap_net_bind_service,cap_net_raw,cap_net_admin+ep' "$(readlink -f /usr/local/bin/node)" \
    && apt-get purge -y libcap2-bin && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=build /app ./
ENV PLINTH_DATA_DIR=/var/lib/plinth NODE_ENV=production
RUN mkdir -p /var/lib/plinth && chown node:node /var/lib/plinth && chmod 700 /var/lib/plinth
VOLUME /var/lib/plinth
USER node
EXPOSE 67/udp 69/udp 4011/udp 8091/tcp 8443/tcp
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 CMD ["node", "contrib/healthcheck.mjs"]
ENTRYPOINT ["node", "--max-semi-space-size=2", "--heap-growing-percent=400", "bin/plinth.js", "serve"]
