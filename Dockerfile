# syntax=docker/dockerfile:1
# Build stage: compiles the native modules (better-sqlite3, Plinth's socket addon) with the toolchain.
FROM node:20-bookworm AS build
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json ./
COPY native ./native
# npm ci's postinstall builds the socket helper (native/) against the image's Node headers.
RUN npm ci && test -f native/build/Release/plinth_net.node
COPY . .
RUN npm run typecheck && npm prune --omit=dev

# Runtime stage: no compilers, unprivileged user, only the capabilities the protocols need.
FROM node:20-bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends libcap2-bin ipxe \
    && setcap 'cap_net_bind_service,cap_net_raw+ep' "$(readlink -f /usr/local/bin/node)" \
    && apt-get purge -y libcap2-bin && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/native/build/Release/plinth_net.node ./native/build/Release/plinth_net.node
COPY --from=build /app/package.json ./
COPY src ./src
COPY bin ./bin
COPY bootenvs ./bootenvs
COPY templates ./templates
COPY assets ./assets
# Debian's iPXE loaders as the default assets (ipxe.efi is a symlink into /boot in that package).
RUN cp /usr/lib/ipxe/undionly.kpxe /usr/lib/ipxe/snponly.efi assets/ 2>/dev/null; cp /boot/ipxe.efi assets/ 2>/dev/null; true
ENV PLINTH_DATA_DIR=/var/lib/plinth NODE_ENV=production
RUN mkdir -p /var/lib/plinth && chown node:node /var/lib/plinth
VOLUME /var/lib/plinth
USER node
EXPOSE 67/udp 69/udp 4011/udp 8091/tcp 8443/tcp
ENTRYPOINT ["node", "--import", "tsx", "src/main.ts"]
