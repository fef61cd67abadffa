"""berth.snapshots"""
