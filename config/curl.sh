#!/bin/sh
# curl with an OAuth token from mailoauth (curl picks OAUTHBEARER when the server offers it).
curl --user me@gmail.com --oauth2-bearer "$(mailoauth token me@gmail.com)" imaps://imap.gmail.com/
