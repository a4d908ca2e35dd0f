# One image for the controller and the agent (the agent needs a C compiler for native/).
FROM node:20-bookworm
WORKDIR /opt/damon-fleet
COPY package.json package-lock.json ./
COPY native ./native
COPY proto ./proto
COPY buf.yaml buf.gen.yaml tsconfig.json ./
COPY common ./common
COPY agent ./agent
COPY controller ./controller
COPY examples ./examples
COPY reports ./reports
COPY cli ./cli
COPY bin ./bin
RUN npm ci --ignore-scripts && npm run build:native && npm run build && npm prune --omit=dev
ENTRYPOINT ["node", "bin/damon-fleet.js"]
