#!/bin/bash
echo "$GREETING from fleet-demo"
